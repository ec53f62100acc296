//! Warm pools: per profile, pods started ahead of demand, running the launcher, and claimed at
//! spawn time by one merge patch that gives them the user's identity and environment.
//!
//! Invariants:
//! - A pod is claimed at most once: the claim patch carries the resourceVersion the claimer saw,
//!   so a second claim of the same version fails with 409 and moves on to the next pod. (Within
//!   one hub, a set of pods being claimed also keeps two spawns from trying the same one.)
//! - The pool refills itself from the pod cache's change signal, never by polling: after a claim,
//!   a deletion or a failure it counts unclaimed live pods (plus its creations the watch has not
//!   shown yet) and creates what is missing.
//! - Pods of an older configuration (their `edgehub.io/pool-spec` hash differs) are deleted and
//!   replaced; pods that fail for good (image pull, crash loop) are deleted, and creation backs
//!   off while they keep failing, so a broken image does not churn pods.
//! - A pool pod has no per-user volume claim and no per-pod Service (documented limitation).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use config::kubernetes::{KubernetesConfig, Profile};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams, PostParams};

use crate::api::{is_conflict, is_not_found};
use crate::cache::Cache;
use crate::error::KubeSpawnError;
use crate::names;
use crate::render::{self, Owner, PodInput};
use crate::spawn::KubeSpawner;
use crate::status::{self, StartState};

/// A creation the watch has not shown within this long is no longer counted.
const CREATION_VISIBLE_WITHIN: Duration = Duration::from_secs(60);
/// Backoff of creations after pool pods failed: doubled per failure in a row, capped.
const FAILURE_BACKOFF: Duration = Duration::from_secs(5);
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(300);

pub(crate) struct Pool {
    profile: String,
    size: u32,
    /// The pod every member is made from (name filled per pod).
    template: Pod,
    spec_hash: String,
    /// Pods being claimed by a spawn of this hub.
    claiming: Mutex<HashSet<String>>,
    /// Pods created and not yet seen in the cache, with when.
    creating: Mutex<HashMap<String, Instant>>,
    counter: AtomicU64,
}

/// What the refill should do now.
#[derive(Debug, Default, PartialEq)]
pub struct RefillPlan {
    pub create: u32,
    /// Pods to delete: stale configuration, or failed for good.
    pub delete: Vec<String>,
    /// Of the deletions, how many failed (for the backoff).
    pub failed: u32,
    /// Some member is running (the pool works; the backoff resets).
    pub healthy: bool,
}

/// Decides the refill from the cached pods of the namespace. Pure.
pub fn refill_plan(
    pods: &[Arc<Pod>],
    profile: &str,
    size: u32,
    spec_hash: &str,
    creating: &HashSet<String>,
    claiming: &HashSet<String>,
) -> RefillPlan {
    let mut plan = RefillPlan::default();
    let mut live = 0u32;
    // Members not yet running, then running ones: the first to go when the pool is too big.
    let mut surplus: Vec<String> = Vec::new();
    let mut running: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for pod in pods.iter().filter(|p| is_unclaimed_member(p, profile)) {
        let name = pod.name_any();
        seen.insert(name.clone());
        if pod.metadata.deletion_timestamp.is_some() || claiming.contains(&name) {
            continue;
        }
        let hash = pod.annotations().get(render::POOL_SPEC).map(String::as_str);
        if hash != Some(spec_hash) {
            plan.delete.push(name);
            continue;
        }
        match status::start_state(pod, true) {
            StartState::Failed(_) => {
                plan.delete.push(name);
                plan.failed += 1;
            }
            StartState::Running { .. } => {
                plan.healthy = true;
                live += 1;
                running.push(name);
            }
            StartState::Waiting(_) => {
                live += 1;
                surplus.push(name);
            }
        }
    }
    live += creating.iter().filter(|n| !seen.contains(*n)).count() as u32;
    plan.create = size.saturating_sub(live);
    // A smaller `warm_pool` than there are members (the configuration changed): trim.
    surplus.extend(running);
    let extra = live.saturating_sub(size) as usize;
    plan.delete.extend(surplus.into_iter().take(extra));
    plan
}

fn is_unclaimed_member(pod: &Pod, profile: &str) -> bool {
    let labels = pod.labels();
    labels.get(render::POOL).map(String::as_str) == Some(profile)
        && labels.get(render::CLAIMED).map(String::as_str) == Some("false")
}

impl Pool {
    pub(crate) fn new(config: &KubernetesConfig, profile: &Profile) -> Pool {
        let pod = config.pod.overlaid(&profile.pod);
        let no_env = BTreeMap::new();
        let input = PodInput {
            namespace: &config.namespace,
            name: String::new(),
            owner: None,
            profile: Some(&profile.slug),
            pod: &pod,
            hub_env: &no_env,
            prefix: "/",
            claim: None,
            grace_secs: config.stop_grace_secs,
            launcher: Some(&config.launcher_command),
        };
        // `validate` renders every profile's pod, so this cannot fail for a validated config; a
        // pool whose template does not render stays empty and says why.
        let template = render::pod(&input).unwrap_or_else(|e| {
            tracing::error!("warm pool {}: {e}", profile.slug);
            Pod::default()
        });
        let spec_hash = template
            .annotations()
            .get(render::POOL_SPEC)
            .cloned()
            .unwrap_or_default();
        Pool {
            profile: profile.slug.clone(),
            size: if template.spec.is_some() { profile.warm_pool } else { 0 },
            template,
            spec_hash,
            claiming: Mutex::new(HashSet::new()),
            creating: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
        }
    }

    /// Starts the refill task; it ends when the spawner goes.
    pub(crate) fn start(self: &Arc<Pool>, spawner: Weak<KubeSpawner>) {
        let pool = self.clone();
        tokio::spawn(async move { pool.refill_loop(spawner).await });
    }

    /// Running, unclaimed, current members.
    pub(crate) fn ready_count(&self, pods: &Cache<Pod>) -> usize {
        pods.store().state_filter(|p| self.claimable(p)).len()
    }

    fn claimable(&self, pod: &Pod) -> bool {
        is_unclaimed_member(pod, &self.profile)
            && pod.annotations().get(render::POOL_SPEC) == Some(&self.spec_hash)
            && matches!(status::start_state(pod, false), StartState::Running { .. })
    }

    /// Claims a running member for `owner`; `None` when none is free.
    pub(crate) async fn claim(
        &self,
        spawner: &KubeSpawner,
        owner: &Owner,
        env: &BTreeMap<String, String>,
    ) -> Result<Option<Pod>, KubeSpawnError> {
        let mut candidates = spawner.pods.store().state_filter(|p| self.claimable(p));
        candidates.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
        for candidate in candidates {
            let name = candidate.name_any();
            if !lock(&self.claiming).insert(name.clone()) {
                continue;
            }
            let patch = render::claim_patch(owner, &candidate.resource_version().unwrap_or_default(), env);
            let params = PatchParams::default();
            let body = Patch::Merge(&patch);
            let result = spawner
                .gate
                .call("claim pod", || spawner.pods_api.patch(&name, &params, &body))
                .await;
            match result {
                Ok(pod) => {
                    tracing::info!("{}'s server {:?} claimed the warm pod {name}", owner.user, owner.server);
                    return Ok(Some(pod));
                }
                Err(e) if is_conflict(&e) || is_not_found(&e) => {
                    // Claimed by someone else meanwhile, or deleted since the cache saw it (the
                    // pool trimmed by another hub replica): try the next one.
                    lock(&self.claiming).remove(&name);
                }
                Err(e) => {
                    lock(&self.claiming).remove(&name);
                    return Err(KubeSpawnError::api(format!("claiming the warm pod {name}"), &e));
                }
            }
        }
        Ok(None)
    }

    async fn refill_loop(self: Arc<Pool>, spawner: Weak<KubeSpawner>) {
        let Some((mut changes, mut refill)) = spawner.upgrade().map(|s| (s.pods.changes(), s.refill.subscribe()))
        else {
            return;
        };
        let mut failures = 0u32;
        let mut hold_until: Option<Instant> = None;
        loop {
            if !*refill.borrow_and_update() {
                // Another hub replica keeps the pools: wait until this one is asked to.
                if refill.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let Some(s) = spawner.upgrade() else { return };
            let pods = s.pods.store().state();
            self.forget_settled(&pods);
            let plan = {
                let creating: HashSet<String> = lock(&self.creating).keys().cloned().collect();
                let claiming = lock(&self.claiming).clone();
                refill_plan(&pods, &self.profile, self.size, &self.spec_hash, &creating, &claiming)
            };
            if plan.healthy && plan.failed == 0 {
                failures = 0;
            }
            if plan.failed > 0 {
                failures += 1;
                let backoff = FAILURE_BACKOFF
                    .saturating_mul(1 << failures.min(10))
                    .min(MAX_FAILURE_BACKOFF);
                tracing::warn!(
                    "warm pool {}: {} pod(s) failed; creating more in {} s",
                    self.profile,
                    plan.failed,
                    backoff.as_secs()
                );
                hold_until = Some(Instant::now() + backoff);
            }
            for name in &plan.delete {
                let seen_version = pods
                    .iter()
                    .find(|p| p.metadata.name.as_ref() == Some(name))
                    .and_then(|p| p.resource_version());
                if let Err(e) = s.delete_unchanged(name, seen_version).await {
                    tracing::warn!("warm pool {}: {e}", self.profile);
                }
            }
            let held = hold_until.is_some_and(|t| Instant::now() < t);
            if !held {
                for _ in 0..plan.create {
                    self.create_member(&s).await;
                }
            }
            drop(s);
            let wake_at = hold_until
                .filter(|_| held)
                .unwrap_or_else(|| Instant::now() + CREATION_VISIBLE_WITHIN);
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                r = refill.changed() => if r.is_err() { return },
                _ = tokio::time::sleep_until(wake_at.into()) => {}
            }
        }
    }

    /// Drops bookkeeping the cache has caught up with.
    fn forget_settled(&self, pods: &[Arc<Pod>]) {
        let present: HashMap<String, &Pod> = pods.iter().map(|p| (p.name_any(), &**p)).collect();
        lock(&self.creating).retain(|name, at| !present.contains_key(name) && at.elapsed() < CREATION_VISIBLE_WITHIN);
        lock(&self.claiming).retain(|name| present.get(name).is_some_and(|p| is_unclaimed_member(p, &self.profile)));
    }

    async fn create_member(&self, spawner: &KubeSpawner) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let seed = format!(
            "{}-{:?}-{n}-{}",
            self.profile,
            std::time::SystemTime::now(),
            std::process::id()
        );
        let name = names::fit_label(&format!(
            "edgehub-pool-{}-{}",
            self.profile,
            &names::short_hash(&seed)[..6]
        ));
        let mut pod = self.template.clone();
        pod.metadata.name = Some(name.clone());
        lock(&self.creating).insert(name.clone(), Instant::now());
        let params = PostParams::default();
        let result = spawner
            .gate
            .call("create pool pod", || spawner.pods_api.create(&params, &pod))
            .await;
        if let Err(e) = result {
            lock(&self.creating).remove(&name);
            tracing::warn!("warm pool {}: creating {name}: {e}", self.profile);
        }
    }
}

/// A poisoned lock only means a panic elsewhere; the sets stay usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(name: &str, hash: &str, phase: &str, claimed: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {render::POOL: "cpu", render::CLAIMED: claimed.to_string()},
                             "annotations": {render::POOL_SPEC: hash}},
                "spec": {"containers": []},
                "status": {"phase": phase, "podIP": "10.0.0.1"},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn refill_counts_live_members_and_pending_creations() {
        let none = HashSet::new();
        let pods = vec![
            member("a", "h", "Running", false),
            member("b", "h", "Pending", false),
            member("c", "h", "Running", true),
            member("d", "old", "Running", false),
        ];
        let plan = refill_plan(&pods, "cpu", 3, "h", &none, &none);
        assert_eq!(plan.create, 1, "{plan:?}");
        assert_eq!(plan.delete, vec!["d".to_owned()]);
        assert!(plan.healthy);
        let creating: HashSet<String> = ["x".to_owned()].into();
        assert_eq!(refill_plan(&pods, "cpu", 3, "h", &creating, &none).create, 0);
        let claiming: HashSet<String> = ["a".to_owned()].into();
        assert_eq!(refill_plan(&pods, "cpu", 3, "h", &none, &claiming).create, 2);
        assert_eq!(refill_plan(&pods, "gpu", 2, "h", &none, &none).create, 2);
    }

    #[test]
    fn a_pool_bigger_than_its_size_is_trimmed_pending_first() {
        let pods = vec![
            member("a", "h", "Running", false),
            member("b", "h", "Pending", false),
            member("c", "h", "Running", false),
        ];
        let plan = refill_plan(&pods, "cpu", 1, "h", &HashSet::new(), &HashSet::new());
        assert_eq!(plan.create, 0);
        assert_eq!(plan.delete, vec!["b".to_owned(), "a".to_owned()]);
    }

    #[test]
    fn failed_members_are_replaced() {
        let pods = vec![member("a", "h", "Failed", false)];
        let plan = refill_plan(&pods, "cpu", 1, "h", &HashSet::new(), &HashSet::new());
        assert_eq!(plan.delete, vec!["a".to_owned()]);
        assert_eq!(plan.failed, 1);
        assert_eq!(plan.create, 1);
    }
}
