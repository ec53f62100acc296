//! The built-in idle culler: servers idle longer than `cull.timeout_secs` (or older than
//! `cull.max_age_secs`) are stopped. Idleness is `last_activity`, fed by the proxy's per-route
//! activity (read at every reconcile) and by servers' own activity reports, falling back to
//! `started`. jupyterhub-idle-culler works against the REST API as well; this one just needs no
//! extra process.

use std::sync::Arc;
use std::time::Duration;

use crate::hub::Hub;
use crate::model::Phase;

/// Servers to cull now: `(user, server, why)`.
pub fn due(hub: &Hub, now_ms: u64) -> Vec<(String, String, String)> {
    let cfg = &hub.config.cull;
    let timeout_ms = cfg.timeout_secs * 1000;
    let max_age_ms = cfg.max_age_secs * 1000;
    hub.users()
        .values()
        .flat_map(|u| u.servers.values())
        .filter(|s| s.phase() == Phase::Running)
        .filter_map(|s| {
            let r = &s.record;
            let started = r.started_ms?;
            let last = r.last_activity_ms.unwrap_or(started).max(started);
            let why = if timeout_ms > 0 && now_ms.saturating_sub(last) >= timeout_ms {
                format!("idle for {} s", now_ms.saturating_sub(last) / 1000)
            } else if max_age_ms > 0 && now_ms.saturating_sub(started) >= max_age_ms {
                format!(
                    "running for {} s, the maximum age",
                    now_ms.saturating_sub(started) / 1000
                )
            } else {
                return None;
            };
            Some((r.user.clone(), r.name.clone(), why))
        })
        .collect()
}

pub async fn run(hub: Arc<Hub>) {
    if hub.config.cull.timeout_secs == 0 && hub.config.cull.max_age_secs == 0 {
        return;
    }
    let every = Duration::from_secs(hub.config.cull.every_secs.max(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = hub.leader.gained() => {}
        }
        // One culler for all hub replicas: the holder of the background lease.
        if !hub.leader.held() {
            continue;
        }
        for (user, server, why) in due(&hub, proxy::timestamp::now_ms()) {
            tracing::info!("culling {user}'s server {server:?}: {why}");
            if let Err(e) = crate::lifecycle::stop(&hub, &user, &server).await {
                tracing::warn!("culling {user}'s server: {e}");
            }
        }
    }
}
