//! Where the route table lives, behind one interface for the admin API and the health checks
//! (docs/route-store.md).
//!
//! - [`RouteStore::Memory`]: this process only, as configurable-http-proxy. A change is applied
//!   to the table and that is all.
//! - [`RouteStore::Redis`]: shared by every replica. A change is written to Redis atomically
//!   first (nothing is acknowledged that Redis has not taken), reaches every replica's table
//!   through a Redis Stream, and is answered once this replica's table has it. Request routing
//!   never touches Redis: it reads the same lock-free snapshot as with the memory backend.

mod change;
mod redis;

use std::collections::HashMap;
use std::sync::Arc;

pub use change::{Applied, Change};
use config::RouteStorage;

pub use self::redis::RedisStore;
use crate::metrics::Metrics;
use crate::route_table::Routes;
use crate::timestamp::now_ms;

/// What the Redis store reports, for alerts on a fleet that has lost its store.
pub struct StoreMetrics {
    pub routes: metrics::Gauge,
    pub up: metrics::Gauge,
    pub version: metrics::Gauge,
    pub reloads: metrics::Counter,
    pub write_seconds: metrics::Histogram,
}

impl StoreMetrics {
    fn new(m: &Metrics) -> StoreMetrics {
        StoreMetrics {
            routes: m.routes.clone(),
            up: m.gauge(
                "edgeproxy_route_store_up",
                "1 while the replica follows the route store in Redis, 0 while it serves its last table",
            ),
            version: m.gauge(
                "edgeproxy_route_store_version",
                "The route store's version this replica's table shows",
            ),
            reloads: m.counter(
                "edgeproxy_route_store_reloads_total",
                "Full loads of the route table from Redis (start, reconnects, gaps, lost data)",
            ),
            write_seconds: m.histogram(
                "edgeproxy_route_store_write_seconds",
                "Time for an admin-API change to be written to Redis and applied to this replica",
            ),
        }
    }
}

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
#[error("Route store unavailable: {0}")]
pub struct StoreUnavailable(pub String);

pub enum RouteStore {
    Memory,
    Redis(Arc<RedisStore>),
}

/// What `/ready` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Readiness {
    /// The table is loaded: always for memory; after the first full load from Redis.
    pub ready: bool,
    pub backend: &'static str,
    pub routes: usize,
    /// Changes made to the store so far (0 for memory).
    pub version: u64,
    /// `up` or `down`; absent for memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<&'static str>,
}

impl RouteStore {
    /// The store `storage` describes, applying to `routes`.
    pub fn new(
        storage: &RouteStorage,
        routes: Arc<Routes>,
        metrics: &Metrics,
    ) -> Result<RouteStore, ::redis::RedisError> {
        Ok(match storage {
            RouteStorage::Memory => RouteStore::Memory,
            RouteStorage::Redis(config) => {
                RouteStore::Redis(RedisStore::new(config, routes, StoreMetrics::new(metrics))?)
            }
        })
    }

    /// Starts the background work (loading, following, activity), with `default_route` written
    /// once the table is loaded. Nothing to start for memory.
    pub fn start(&self, default_route: Option<Change>) {
        if let RouteStore::Redis(store) = self {
            store.clone().start(default_route);
        }
    }

    /// Makes `change` in the table (and in Redis first, for that backend).
    pub async fn write(&self, routes: &Routes, change: Change) -> Result<Applied, StoreUnavailable> {
        match self {
            RouteStore::Memory => Ok(routes.update(|t| change.apply(t, now_ms()))),
            RouteStore::Redis(store) => store.write(change).await,
        }
    }

    /// Whether the table may be served: always for memory; for Redis once it has been loaded.
    pub fn is_loaded(&self) -> bool {
        match self {
            RouteStore::Memory => true,
            RouteStore::Redis(store) => store.is_loaded(),
        }
    }

    /// The newest activity any replica recorded, by route key; `None` for memory or when Redis
    /// cannot be asked (the replica's own activity then stands alone).
    pub async fn shared_activity(&self, key: Option<&str>) -> Option<HashMap<String, u64>> {
        match self {
            RouteStore::Memory => None,
            RouteStore::Redis(store) => store.shared_activity(key).await,
        }
    }

    pub fn readiness(&self, routes: &Routes) -> Readiness {
        let count = routes.load().len();
        match self {
            RouteStore::Memory => Readiness {
                ready: true,
                backend: "memory",
                routes: count,
                version: 0,
                redis: None,
            },
            RouteStore::Redis(store) => Readiness {
                ready: store.is_loaded(),
                backend: "redis",
                routes: count,
                version: store.version(),
                redis: Some(if store.is_up() { "up" } else { "down" }),
            },
        }
    }
}
