//! The API writes of a spawn: the user's volume claim, the pod (a 409 resolved by who holds the
//! name), its Service, and deletions; each through the [`ApiGate`](crate::api::ApiGate).
//!
//! Invariants: a create that meets 409 never fails a spawn that could go on (the object is
//! ours, or being deleted); a pod whose start is abandoned or failed is deleted.

use std::time::{Duration, Instant};

use config::kubernetes::PodConfig;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::api::{is_conflict, is_not_found};
use crate::error::KubeSpawnError;
use crate::render::{self, Owner};
use crate::spawn::{KubeSpawner, owner_of};

impl KubeSpawner {
    pub(crate) async fn ensure_claim(&self, name: &str, owner: &Owner, pod: &PodConfig) -> Result<(), KubeSpawnError> {
        let storage = pod.storage.clone().unwrap_or_default();
        let claim = render::claim(&self.config.namespace, name, owner, &storage, pod.extra_labels.as_ref())
            .map_err(|e| KubeSpawnError::Config(e.to_string()))?;
        let params = PostParams::default();
        match self
            .gate
            .call("create claim", || self.claims_api.create(&params, &claim))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()), // there already: the user's storage, kept across stops
            Err(e) => Err(KubeSpawnError::api(format!("creating the volume claim {name}"), &e)),
        }
    }

    /// Creates the pod's Service, owned by the pod.
    pub(crate) async fn ensure_service(&self, pod: &Pod, owner: &Owner, port: u16) -> Result<(), KubeSpawnError> {
        let name = pod.name_any();
        let uid = pod.uid().unwrap_or_default();
        let svc = render::service(&self.config.namespace, &name, &uid, owner, port)
            .map_err(|e| KubeSpawnError::Config(e.to_string()))?;
        let params = PostParams::default();
        let result = self
            .gate
            .call("create service", || self.services_api.create(&params, &svc))
            .await;
        let result = match result {
            // Left from an earlier pod of this server that the garbage collector has not removed
            // yet: hand it to this pod, or the collector would delete it later.
            Err(e) if is_conflict(&e) => {
                let owners = json!({"metadata": {"ownerReferences": svc.metadata.owner_references}});
                let params = PatchParams::default();
                let patch = Patch::Merge(&owners);
                self.gate
                    .call("adopt service", || self.services_api.patch(&name, &params, &patch))
                    .await
            }
            other => other,
        };
        result
            .map(drop)
            .map_err(|e| KubeSpawnError::api(format!("creating the service {name}"), &e))
    }

    /// Creates the pod; a 409 is resolved by who holds the name.
    pub(crate) async fn create_pod(
        &self,
        manifest: &Pod,
        owner: &Owner,
        deadline: Instant,
    ) -> Result<Pod, KubeSpawnError> {
        let name = manifest.name_any();
        let params = PostParams::default();
        loop {
            let result = self
                .gate
                .call("create pod", || self.pods_api.create(&params, manifest))
                .await;
            let error = match result {
                Ok(pod) => return Ok(pod),
                Err(e) if is_conflict(&e) => e,
                Err(e) => return Err(KubeSpawnError::api(format!("creating the pod {name}"), &e)),
            };
            // The name is taken. Ours (a retried create whose first answer was lost, or another
            // hub replica) is adopted; one being deleted is waited out; anyone else's is an error.
            let holder = match self.cached(&name) {
                Some(p) => Some(p),
                None => self.wait_for_pod(&name, Instant::now() + Duration::from_secs(2)).await,
            };
            match holder {
                Some(p) if owner_of(&p).as_ref() == Some(owner) => {
                    if p.metadata.deletion_timestamp.is_none() {
                        return Ok((*p).clone());
                    }
                    self.wait_gone(&name, p.uid().as_deref(), deadline)
                        .await
                        .map_err(|()| KubeSpawnError::Timeout {
                            secs: self.config.start_timeout_secs,
                            last: format!("the previous pod {name} was still terminating"),
                        })?;
                }
                _ => {
                    tracing::warn!("creating pod {name}: {error}; the name is held by a pod that is not this server's");
                    return Err(KubeSpawnError::NameTaken { pod: name });
                }
            }
        }
    }

    pub(crate) async fn delete_pod(&self, name: &str, uid: Option<String>, grace: u64) -> Result<(), KubeSpawnError> {
        let preconditions = uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        });
        self.delete_pod_if(name, preconditions, grace).await
    }

    /// Deletes a pool pod only if it has not changed since `resource_version` was read: a pod
    /// claimed meanwhile (the claim changes it) is never deleted by the pool.
    pub(crate) async fn delete_unchanged(
        &self,
        name: &str,
        resource_version: Option<String>,
    ) -> Result<(), KubeSpawnError> {
        let preconditions = resource_version.map(|rv| Preconditions {
            uid: None,
            resource_version: Some(rv),
        });
        self.delete_pod_if(name, preconditions, 0).await
    }

    async fn delete_pod_if(
        &self,
        name: &str,
        preconditions: Option<Preconditions>,
        grace: u64,
    ) -> Result<(), KubeSpawnError> {
        let params = DeleteParams {
            grace_period_seconds: Some(u32::try_from(grace).unwrap_or(u32::MAX)),
            preconditions,
            ..Default::default()
        };
        match self
            .gate
            .call("delete pod", || self.pods_api.delete(name, &params))
            .await
        {
            Ok(_) => Ok(()),
            // Gone already, or a precondition failed: the name holds another pod, or the pod
            // changed (was claimed).
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
            Err(e) => Err(KubeSpawnError::api(format!("deleting the pod {name}"), &e)),
        }
    }

    /// Deletes a pod whose start failed, at once: nothing in it is worth a grace period.
    pub(crate) async fn discard(&self, pod: &Pod) {
        if let Err(e) = self.delete_pod(&pod.name_any(), pod.uid(), 0).await {
            tracing::warn!("cleaning up the failed pod {}: {e}", pod.name_any());
        }
    }
}

/// Deletes a pod whose start was abandoned: dropped while armed, it deletes the pod in the
/// background (no grace period: nobody is using it yet).
pub(crate) struct AbandonGuard {
    api: Option<Api<Pod>>,
    name: String,
    uid: Option<String>,
}

impl AbandonGuard {
    pub(crate) fn new(api: Api<Pod>, pod: &Pod) -> AbandonGuard {
        AbandonGuard {
            api: Some(api),
            name: pod.name_any(),
            uid: pod.uid(),
        }
    }

    pub(crate) fn disarm(mut self) {
        self.api = None;
    }
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        let (Some(api), Ok(runtime)) = (self.api.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let name = std::mem::take(&mut self.name);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: self.uid.take().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        tracing::info!("the start of pod {name} was abandoned; deleting it");
        runtime.spawn(async move {
            if let Err(e) = api.delete(&name, &params).await
                && !is_not_found(&e)
                && !is_conflict(&e)
            {
                tracing::warn!("deleting the abandoned pod {name}: {e}");
            }
        });
    }
}
