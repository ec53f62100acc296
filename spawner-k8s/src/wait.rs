//! Waiting on the watch caches: for a starting pod to run (its events turned into progress, its
//! failures reported at once), for a pod to appear, for one to go.
//!
//! Invariants: every wait sleeps on the caches' change signals (or a deadline), never on a
//! timer loop and never with an API read; a wait always ends, at its deadline at the latest.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::ResourceExt;

use tokio::sync::broadcast::error::RecvError;

use crate::cache::Applied;
use crate::error::KubeSpawnError;
use crate::render::Owner;
use crate::spawn::{KubeSpawner, PodStarted, ProgressFn};
use crate::status::{self, StartState};

/// How long a new pod must keep running before `start` returns: a server that dies at once (a
/// bad command, a missing module) is reported with its exit status instead of as an HTTP
/// timeout later. Not applied to re-attached pods, which have been running.
const EARLY_EXIT_WINDOW: Duration = Duration::from_millis(300);
/// How long a pod we created may stay invisible to the watch before the watch is restarted.
const APPEAR_WITHIN: Duration = Duration::from_secs(10);
/// How often a pod still unseen is looked for again while its watch is alive but behind.
const APPEAR_RECHECK: Duration = Duration::from_secs(2);

impl KubeSpawner {
    /// The server's live pod, after waiting out any that are terminating (a stop still going).
    pub(crate) async fn wait_existing_settled(
        &self,
        owner: &Owner,
        deadline: Instant,
    ) -> Result<Option<Arc<Pod>>, KubeSpawnError> {
        loop {
            let pods = self.owned_pods(owner);
            if let Some(live) = pods
                .iter()
                .find(|p| p.metadata.deletion_timestamp.is_none() && !status::is_finished(p))
            {
                return Ok(Some(live.clone()));
            }
            if let Some(done) = pods.iter().find(|p| p.metadata.deletion_timestamp.is_none()) {
                // A finished pod holds the name; it will not run again.
                self.delete_pod(&done.name_any(), done.uid(), 0).await?;
            }
            let Some(going) = self.owned_pods(owner).into_iter().next() else {
                return Ok(None);
            };
            let name = going.name_any();
            self.wait_gone(&name, going.uid().as_deref(), deadline)
                .await
                .map_err(|()| KubeSpawnError::Timeout {
                    secs: self.config.start_timeout_secs,
                    last: format!("the previous pod {name} was still terminating"),
                })?;
        }
    }

    /// Waits for `name` to show up in the cache.
    pub(crate) async fn wait_for_pod(&self, name: &str, until: Instant) -> Option<Arc<Pod>> {
        let mut changes = self.pods.changes();
        loop {
            if let Some(p) = self.cached(name) {
                return Some(p);
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return None },
                _ = tokio::time::sleep_until(until.into()) => return None,
            }
        }
    }

    /// Waits for the pod `name` (with `uid`, when known) to leave the cache.
    pub(crate) async fn wait_gone(&self, name: &str, uid: Option<&str>, until: Instant) -> Result<(), ()> {
        let mut changes = self.pods.changes();
        loop {
            match self.cached(name) {
                None => return Ok(()),
                Some(p) if uid.is_some() && p.uid().as_deref() != uid => return Ok(()),
                Some(_) => {}
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return Err(()) },
                _ = tokio::time::sleep_until(until.into()) => return Err(()),
            }
        }
    }

    /// Waits on the caches until `pod` runs or fails, reporting its events as progress. With
    /// `settle`, the pod must also keep running for [`EARLY_EXIT_WINDOW`] without a restart.
    pub(crate) async fn wait_running(
        &self,
        pod: &Pod,
        profile: Option<&str>,
        progress: &ProgressFn,
        deadline: Instant,
        settle: bool,
    ) -> Result<PodStarted, KubeSpawnError> {
        let name = pod.name_any();
        let uid = pod.uid();
        let began = Instant::now();
        let mut pod_changes = self.pods.changes();
        // The pod's events: those already cached, then each new one as it comes (a full look at
        // the store again only after a relist or when this wait fell behind).
        let mut applied = self.events.applied();
        let scan = || {
            self.events
                .store()
                .state_filter(|e| status::event_is_for(e, &name, uid.as_deref()))
        };
        let mut incoming: Vec<Arc<Event>> = scan();
        let mut shown: HashMap<String, i32> = HashMap::new();
        let mut percent = 10u8;
        let mut scale_up = false;
        let mut seen = false;
        let mut kicked = false;
        let mut appear_check = began + APPEAR_WITHIN;
        let mut last = "created, not yet seen by the watch".to_owned();
        let baseline_restarts = status::restarts(pod);
        let mut settled_at: Option<Instant> = None;
        loop {
            let mut fresh: Vec<Arc<Event>> = std::mem::take(&mut incoming)
                .into_iter()
                .filter(|e| {
                    let key = e.uid().unwrap_or_else(|| e.name_any());
                    shown.get(&key) != Some(&e.count.unwrap_or(1))
                })
                .collect();
            fresh.sort_by_key(|e| {
                e.last_timestamp
                    .clone()
                    .map(|t| t.0)
                    .or(e.metadata.creation_timestamp.clone().map(|t| t.0))
            });
            for event in fresh {
                shown.insert(
                    event.uid().unwrap_or_else(|| event.name_any()),
                    event.count.unwrap_or(1),
                );
                let reason = event.reason.as_deref().unwrap_or("");
                scale_up |= reason == "TriggeredScaleUp";
                if let Some(p) = status::event_progress(reason) {
                    percent = percent.max(p);
                    progress(percent, status::event_message(&event));
                }
            }
            match self.cached(&name) {
                Some(current) if uid.is_none() || current.uid() == uid => {
                    seen = true;
                    let exited = status::server_down(&current).or_else(|| {
                        (status::restarts(&current) > baseline_restarts).then(|| status::exit_code(&current))
                    });
                    match (status::start_state(&current, scale_up), exited) {
                        (StartState::Failed(e), _) => {
                            self.discard(&current).await;
                            return Err(e);
                        }
                        (_, Some(code)) => {
                            self.discard(&current).await;
                            return Err(KubeSpawnError::Exited {
                                code,
                                message: format!("see `kubectl logs {name} -n {} --previous`", self.config.namespace),
                            });
                        }
                        (StartState::Running { ready: false, .. }, None) => {
                            settled_at = None;
                            last = "running, not ready yet".to_owned();
                        }
                        (StartState::Running { ready: true, .. }, None) => {
                            let since = *settled_at.get_or_insert_with(Instant::now);
                            if !settle || since.elapsed() >= EARLY_EXIT_WINDOW {
                                let url = self.url_of(&current).unwrap_or_default();
                                progress(60, format!("Pod {name} is running"));
                                return Ok(self.started(&current, &url, profile));
                            }
                            last = "running, settling".to_owned();
                        }
                        (StartState::Waiting(s), None) => {
                            settled_at = None;
                            last = s;
                        }
                    }
                }
                _ if seen => return Err(KubeSpawnError::Deleted { pod: name }),
                _ => {
                    if !kicked && Instant::now() >= appear_check {
                        // The watch may have silently stopped delivering (kubespawner#216). A
                        // watch that received anything in the last APPEAR_WITHIN is alive, only
                        // behind (a busy API server): a relist would add to the load, not cut the
                        // wait. Look again later; a watch that goes quiet is restarted then.
                        if self.pods.age() >= APPEAR_WITHIN {
                            tracing::warn!(
                                "pod {name} was created but the watch has not shown it; restarting the watch"
                            );
                            self.pods.restart();
                            kicked = true;
                        } else {
                            appear_check = Instant::now() + APPEAR_RECHECK;
                        }
                    }
                }
            }
            // Besides changes, wake for the end of the settling window, and for the watch check
            // (a dead watch would send no change to wake us).
            let timer = match settled_at {
                Some(t) => Some(t + EARLY_EXIT_WINDOW),
                None if !seen && !kicked => Some(appear_check),
                None => None,
            }
            .filter(|t| *t < deadline);
            tokio::select! {
                _ = pod_changes.changed() => {}
                received = applied.recv() => match received {
                    Ok(Applied::Object(event)) => {
                        if status::event_is_for(&event, &name, uid.as_deref()) {
                            incoming.push(event);
                        }
                    }
                    Ok(Applied::Relisted) | Err(RecvError::Lagged(_)) => incoming = scan(),
                    // The cache lives as long as the spawner; only a shutdown ends it.
                    Err(RecvError::Closed) => return Err(KubeSpawnError::Timeout { secs: self.config.start_timeout_secs, last }),
                },
                _ = tokio::time::sleep_until(timer.unwrap_or(deadline).into()), if timer.is_some() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {
                    self.discard(pod).await;
                    return Err(KubeSpawnError::Timeout { secs: self.config.start_timeout_secs, last });
                }
            }
        }
    }
}
