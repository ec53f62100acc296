//! Keeping the proxy's table true (JupyterHub's `check_routes`): the hub is the source of truth,
//! the proxy's table a cache it can rebuild whole. Runs at start-up, every
//! `reconcile_interval_secs` (5 s by default, so a restarted proxy is repaired within that), and on
//! `POST /hub/api/proxy`. The same listing feeds `last_activity` from the proxy into the hub.
//!
//! Only routes tagged `"jupyterhub": true` are ever deleted: an operator's own routes are left
//! alone. Routes of pending servers are kept (the spawn is about to add or has just added them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Map, Value};

use crate::hub::Hub;
use crate::model::Phase;
use crate::proxy_api::{ProxyApiError, ProxyEndpoint, route_key};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileReport {
    pub added: usize,
    pub fixed: usize,
    pub deleted: usize,
}

/// A route the hub wants in the proxy.
struct Wanted {
    /// CHP key (`/user/alice`).
    key: String,
    /// JupyterHub routespec (`/user/alice/`).
    routespec: String,
    target: String,
    data: Map<String, Value>,
}

/// The routes the hub wants, and the keys of pending servers' routes (kept, not wanted).
fn desired_routes(hub: &Hub) -> (Vec<Wanted>, Vec<String>) {
    let mut want = Vec::new();
    let mut pending = Vec::new();
    let mut hub_data = Map::new();
    hub_data.insert("hub".into(), Value::Bool(true));
    want.push(Wanted {
        key: route_key(&hub.base),
        routespec: hub.base.clone(),
        target: hub.hub_url.clone(),
        data: hub_data,
    });
    for service in hub.services.iter() {
        if let Some(url) = &service.config.url {
            let routespec = service.prefix(&hub.base);
            want.push(Wanted {
                key: route_key(&routespec),
                routespec,
                target: url.clone(),
                data: service.route_data(),
            });
        }
    }
    let shares = hub.store.shares().unwrap_or_else(|e| {
        tracing::warn!("reconcile: shares cannot be read; routes name their owners only: {e}");
        Vec::new()
    });
    for s in hub.users().values().flat_map(|u| u.servers.values()) {
        let prefix = hub.prefix(&s.record.user, &s.record.name);
        match (s.phase(), &s.record.url) {
            (Phase::Running, Some(url)) => want.push(Wanted {
                key: route_key(&prefix),
                routespec: prefix,
                target: url.clone(),
                data: crate::shares::route_data_with(hub, &shares, &s.record.user, &s.record.name),
            }),
            (Phase::Pending, _) => pending.push(route_key(&prefix)),
            _ => {}
        }
    }
    (want, pending)
}

/// Reconciles every replica of the proxy, each against its own table, so a new (empty) replica
/// is filled by the next run. Fails only if no replica could be reconciled; a replica that fails
/// is logged and retried next time.
pub async fn check_routes(hub: &Arc<Hub>) -> Result<ReconcileReport, ProxyApiError> {
    let _one_at_a_time = hub.reconcile_lock.lock().await;
    let began = Instant::now();
    let replicas = hub.proxy.replicas().await?;
    let results = join_all(replicas.iter().map(|r| check_replica(hub, r))).await;
    let mut total = ReconcileReport::default();
    let mut reconciled = 0;
    let mut failure = None;
    for (replica, result) in replicas.iter().zip(results) {
        match result {
            Ok(r) => {
                reconciled += 1;
                total.added += r.added;
                total.fixed += r.fixed;
                total.deleted += r.deleted;
            }
            Err(e) => {
                if replicas.len() > 1 {
                    tracing::warn!("reconcile: the proxy replica {}: {e}", replica.address());
                }
                failure = Some(e);
            }
        }
    }
    match failure {
        Some(e) if reconciled == 0 => Err(e),
        _ => {
            hub.metrics.check_routes_duration.record(began.elapsed().as_secs_f64());
            Ok(total)
        }
    }
}

/// One replica's table made to match `want`; its `last_activity` is fed to the hub (each
/// replica sees only the traffic that came through it).
async fn check_replica(hub: &Hub, replica: &ProxyEndpoint) -> Result<ReconcileReport, ProxyApiError> {
    let polled = Instant::now();
    let table = replica.routes().await?;
    hub.metrics.proxy_poll_duration.record(polled.elapsed().as_secs_f64());

    for route in table.values() {
        if let (Some(Value::String(user)), Some(at)) = (route.data.get("user"), route.last_activity_ms) {
            let server = route.data.get("server_name").and_then(Value::as_str).unwrap_or("");
            if let Err(e) = hub.note_activity(user, Some(server), at) {
                tracing::warn!("recording activity of {user}: {e}");
            }
        }
    }

    // Wanted routes are read after the table: a server stopped meanwhile is then neither wanted
    // nor re-added.
    let (want, pending) = desired_routes(hub);
    let mut report = ReconcileReport::default();
    for Wanted {
        key,
        routespec,
        target,
        data,
    } in &want
    {
        match table.get(key) {
            Some(have) if have.target == *target && have.is_hubs() && admits_the_same(&have.data, data) => continue,
            Some(_) => report.fixed += 1,
            None => report.added += 1,
        }
        tracing::info!("reconcile: route {routespec} -> {target} on {}", replica.address());
        replica.add_route(routespec, target, data.clone()).await?;
    }
    for (key, route) in &table {
        let wanted = want.iter().any(|w| w.key == *key) || pending.contains(key);
        if route.is_hubs() && !wanted {
            tracing::info!("reconcile: deleting stale route {key} on {}", replica.address());
            replica.delete_route(key).await?;
            report.deleted += 1;
        }
    }
    Ok(report)
}

/// The route data the edge decides by: the owner, whom else it lets in, and how. A route that
/// differs in these is written again, so a change of groups or roles reaches the edge within a
/// reconcile even where nothing wrote the route at the time.
const EDGE_POLICY_KEYS: &[&str] = &["user", "users", "groups", "auth"];

fn admits_the_same(have: &Map<String, Value>, want: &Map<String, Value>) -> bool {
    EDGE_POLICY_KEYS.iter().all(|k| have.get(*k) == want.get(*k))
}

/// Reconciles every `reconcile_interval_secs`, and polls servers every `poll_interval_secs`.
pub async fn run(hub: Arc<Hub>) {
    let every = Duration::from_secs(hub.config.reconcile_interval_secs);
    let poll_every = Duration::from_secs(hub.config.spawner.poll_interval_secs.max(1));
    let mut last_poll = Instant::now();
    let mut failing = false;
    loop {
        // With several hubs, only the one holding the background lease reconciles; one that
        // just took the lease over starts at once rather than a period later.
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = hub.leader.gained() => {}
        }
        if !hub.leader.held() {
            continue;
        }
        match check_routes(&hub).await {
            Ok(r) if r != ReconcileReport::default() => {
                tracing::info!("reconcile repaired the proxy's table: {r:?}");
                failing = false;
            }
            Ok(_) => failing = false,
            Err(e) if !failing => {
                // Logged once per outage, not every few seconds.
                tracing::warn!("reconcile: {e}");
                failing = true;
            }
            Err(_) => {}
        }
        if last_poll.elapsed() >= poll_every {
            last_poll = Instant::now();
            crate::lifecycle::poll_all(&hub).await;
        }
    }
}
